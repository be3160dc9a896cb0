"""Stand-ins for the outside services the bot talks to, shared by the tests and the benchmarks."""
