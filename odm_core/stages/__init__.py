"""ODM's stages, one thin module each: inputs and options in, outputs and a small typed result out."""
