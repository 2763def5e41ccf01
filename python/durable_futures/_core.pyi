__version__: str
PROTOCOL_VERSIONS: tuple[int, int]
