"""EM-Refiner (paper 000): energy (Eq. 2-9), fragment adjustment and atomic SAMC refinement."""
