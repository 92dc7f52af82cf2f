"""Services: Gemini, templates, formatting, writing, probing. They do not import each other,
except that the formatter uses templates."""
