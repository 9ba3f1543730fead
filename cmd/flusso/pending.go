package main

// TODO(cli): schema.JSONSchema once pkg/schema provides it.
var indexJSONSchema = []byte("{}\n")
