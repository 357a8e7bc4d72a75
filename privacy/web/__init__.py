"""The static files of the teacher page (HTML, CSS, one ES module), shipped as package data."""
