"""Jinja templates of the dataset, model and Space cards (installed as `factory.card_templates`)."""
