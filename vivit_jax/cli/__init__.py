"""The command line: one thin module per console command (`vivit-evaluate`, `vivit-predict`, ...; training is
`vivit_jax/main.py`, `vivit-train`). Each parses its flags and calls library functions; usage text lives in its
`--help`. Library code never imports this package."""
