"""Model refinement in density maps: EM-Refiner (:mod:`.emrefiner`)."""
