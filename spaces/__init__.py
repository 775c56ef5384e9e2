"""The demo Space app (in the wheel as `factory.space_template`); Space folders get a copy of
app.py."""
