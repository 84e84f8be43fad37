"""ebr package."""
