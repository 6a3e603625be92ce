"""The recorders: each reads one kind of artifact and writes its part of kit/knowledge/store/.

    index.py   the package index (PEP 691 pages, PEP 658 metadata)     -> store/index/, store/files/
    elf.py     compiled kernels' DT_NEEDED, by range requests on wheels -> store/needed/
    torch_arch.py  the arch list compiled into each torch build          -> store/archs/

fetch.py (HTTP, counted), remote_zip.py (a zip read by ranges), elf_read.py (an ELF prefix) and
storefile.py (the line-per-release JSON format) serve them. `python -m kit.knowledge refresh` runs
every recorder listed in kit/knowledge/__main__.py.
"""
