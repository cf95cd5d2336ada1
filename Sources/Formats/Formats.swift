// placeholder: Formats
