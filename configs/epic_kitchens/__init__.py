"""EPIC-Kitchens-100 configs (two heads: nouns and verbs)."""
