"""Stand-ins for what Snakemake hands a rule's script, for tests that run steps without Snakemake."""


class Named(list):
    """Like Snakemake's Namedlist: the values in order, ``items()`` by name."""

    def __init__(self, **named):
        super().__init__(named.values())
        self.named = named

    def items(self):
        return self.named.items()
