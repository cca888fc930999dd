"""The leaves every room uses: user errors (one paragraph, exit 2), camexp's messages, and the
checks of a setting's value."""
