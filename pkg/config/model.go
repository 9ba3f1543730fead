// Package config holds the model of a deployment (`flusso.toml`): the source,
// the sinks, the indexes and their schemas, and how secrets are resolved from
// the environment at run time.
package config

import (
	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/schema"
)

// Value is an env_or_value: a literal, or a reference to an environment
// variable resolved only when the pipeline runs. The zero Value is unset.
type Value struct {
	Literal string `json:"literal,omitempty" msgpack:"literal,omitempty"`
	Env     string `json:"env,omitempty" msgpack:"env,omitempty"`
}

// IsSet reports whether the file gave a literal or a reference.
func (v Value) IsSet() bool { return v.Literal != "" || v.Env != "" }

// Config is one fully validated deployment with every referenced schema.
type Config struct {
	// Path is the file the config was loaded from, for messages only.
	Path string `json:"-" msgpack:"path"`

	Source  Source       `json:"source" msgpack:"source"`
	Sinks   []Sink       `json:"sinks" msgpack:"sinks"` // in file order; never empty after load (stdout fallback)
	Indexes []Index      `json:"indexes" msgpack:"indexes"`
	OnError flow.OnError `json:"on_error" msgpack:"on_error"`
	Prefix  string       `json:"prefix,omitempty" msgpack:"prefix"`
	Server  Server       `json:"server" msgpack:"server"`
}

// Postgres is the only source type.
const Postgres = "postgres"

// Source is the Postgres database documents are read from.
type Source struct {
	Type string `json:"type" msgpack:"type"` // "postgres"
	// URL is the full-URL form (a literal or { env = "X" }); Parts is the
	// parts form. At most one is set; with neither, DATABASE_URL must supply
	// the URL at run time (see ConnString).
	URL               Value      `json:"connection_url,omitempty" msgpack:"url"`
	Parts             *ConnParts `json:"connection_parts,omitempty" msgpack:"parts"`
	ManagePublication bool       `json:"manage_publication" msgpack:"manage_publication"`
}

// ConnParts is the individual-parts form of connection_url.
type ConnParts struct {
	Host     string `json:"host" msgpack:"host"`
	Port     int    `json:"port" msgpack:"port"`
	User     string `json:"user" msgpack:"user"`
	Password Value  `json:"password,omitempty" msgpack:"password"`
	Database string `json:"database" msgpack:"database"`
}

// Sink types.
const (
	OpenSearch = "opensearch"
	Stdout     = "stdout"
)

// Sink is one named destination.
type Sink struct {
	Name string `json:"name" msgpack:"name"`
	Type string `json:"type" msgpack:"type"`

	// OpenSearch options. URL may be unset in the file: the reserved
	// <NAME>_OPENSEARCH_URL then supplies it at run time (see Connection).
	URL              Value  `json:"url,omitempty" msgpack:"url"`
	Username         Value  `json:"username,omitempty" msgpack:"username"`
	Password         Value  `json:"password,omitempty" msgpack:"password"`
	TLSVerify        bool   `json:"tls_verify" msgpack:"tls_verify"`
	BatchSize        int    `json:"batch_size" msgpack:"batch_size"`
	MaxBytes         int    `json:"max_bytes" msgpack:"max_bytes"`
	TimeoutSecs      int    `json:"timeout_secs" msgpack:"timeout_secs"`
	MaxRetries       int    `json:"max_retries" msgpack:"max_retries"`
	Pipeline         string `json:"pipeline,omitempty" msgpack:"pipeline"`
	NumberOfShards   int    `json:"number_of_shards" msgpack:"number_of_shards"`
	NumberOfReplicas int    `json:"number_of_replicas" msgpack:"number_of_replicas"`
	RefreshInterval  string `json:"refresh_interval" msgpack:"refresh_interval"`
	TextAnalysis     string `json:"text_analysis" msgpack:"text_analysis"` // "builtin" or "icu"
	AutoSubfields    bool   `json:"auto_subfields" msgpack:"auto_subfields"`

	// Stdout options.
	Pretty bool `json:"pretty,omitempty" msgpack:"pretty"`
}

// Index is one [[index]] entry with its loaded schema.
type Index struct {
	Name       string        `json:"name" msgpack:"name"`
	SchemaPath string        `json:"schema" msgpack:"schema_path"`
	Enabled    bool          `json:"enabled" msgpack:"enabled"`
	OnError    flow.OnError  `json:"on_error" msgpack:"on_error"` // resolved: the override or the global default
	Schema     *schema.Index `json:"-" msgpack:"schema_model"`
}

// Server holds the HTTP bind addresses from the [server] table.
type Server struct {
	PublicAddress  string `json:"public_address" msgpack:"public_address"`
	PrivateAddress string `json:"private_address" msgpack:"private_address"`
}

// Defaults from the reference.
const (
	DefaultPublicAddress  = "127.0.0.1:9464"
	DefaultPrivateAddress = "127.0.0.1:9465"
)
