"""Binary differential updates between versions of an artifact.

bsdiff4 for raw diffs of files that fit in memory, archive-aware diffs that
patch the uncompressed members of wheels, tarballs and .debs and rebuild the
exact archive, bounded-memory diffs of huge files, and version chains.
"""
