"""One thin router per resource: parse, call a domain function, answer."""
