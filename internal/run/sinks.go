package run

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/flusso/flusso/pkg/config"
	"github.com/flusso/flusso/pkg/health"
	"github.com/flusso/flusso/pkg/sink"
	"github.com/flusso/flusso/pkg/sink/opensearch"
	"github.com/flusso/flusso/pkg/sink/stdout"
)

// openSink opens one configured sink, resolving its secrets from env now
// (and logging which reserved overrides applied, never their values).
func openSink(sc config.Sink, opts Options, env func(string) (string, bool), hs *health.Stage) (sink.Sink, error) {
	switch sc.Type {
	case config.Stdout:
		return stdout.New(sc.Name, os.Stdout, sc.Pretty || opts.Pretty, opts.Version), nil
	case config.OpenSearch:
		return OpenSearch(sc, opts.Config.Path, opts.IndexPrefix, env, hs)
	}
	return nil, fmt.Errorf("sink %s: unknown type %q", sc.Name, sc.Type)
}

// OpenSearch opens a configured OpenSearch sink (config file path, for
// messages) under the index prefix, resolving its secrets from env now;
// `flusso audit` reads back through it.
func OpenSearch(sc config.Sink, path, prefix string, env func(string) (string, bool), hs *health.Stage) (*opensearch.Sink, error) {
	conn, overrides, err := sc.Connection(env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, o := range overrides {
		slog.Info("deployment override", "override", o.String())
	}
	return opensearch.New(opensearch.Config{
		Name:               sc.Name,
		URL:                conn.URL,
		Username:           conn.Username,
		Password:           conn.Password,
		InsecureSkipVerify: !sc.TLSVerify,
		BatchSize:          sc.BatchSize,
		MaxBytes:           sc.MaxBytes,
		Timeout:            time.Duration(sc.TimeoutSecs) * time.Second,
		MaxRetries:         sc.MaxRetries,
		Pipeline:           sc.Pipeline,
		Shards:             sc.NumberOfShards,
		Replicas:           sc.NumberOfReplicas,
		RefreshInterval:    sc.RefreshInterval,
		TextAnalysis:       sc.TextAnalysis,
		AutoSubfields:      sc.AutoSubfields,
		Prefix:             prefix,
		Health:             hs,
	})
}
