"""Carbon accounting by the Chinese official methods (GB/T 32150, the NDRC sector guidelines): the
emission-factor library (:mod:`.factors`), unit conversion of activity data (:mod:`.units`) and the modules built
on them."""
