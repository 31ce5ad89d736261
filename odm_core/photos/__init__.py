"""One photo's metadata: EXIF/XMP reading and the Photo record."""
