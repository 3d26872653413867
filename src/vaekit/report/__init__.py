"""Pictures (matplotlib, the only place it is imported) and the HTML report."""
