package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Placement is how many copies of every stream and key-value bucket a NATS
// cluster keeps, and optionally on which servers. With 3 replicas a stream
// survives the loss of any one server without losing a message it
// acknowledged; a single server (or the embedded one) takes 1 only.
type Placement struct {
	Replicas int      // 0: DefaultReplicas
	Tags     []string // server tags every replica's server must carry; none: any server
}

// DefaultReplicas is the replica count for a single server.
const DefaultReplicas = 1

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

func (p Placement) withDefaults() Placement {
	if p.Replicas <= 0 {
		p.Replicas = DefaultReplicas
	}
	return p
}

// placement is the JetStream placement of the tags; nil places anywhere.
func (p Placement) placement() *jetstream.Placement {
	if len(p.Tags) == 0 {
		return nil
	}
	return &jetstream.Placement{Tags: p.Tags}
}

func (p Placement) apply(cfg *jetstream.StreamConfig) {
	cfg.Replicas, cfg.Placement = p.Replicas, p.placement()
}

// JetStream's error codes for a placement it cannot make (the client
// library names no constants for them).
const (
	jsErrCodeInsufficientResources   jetstream.ErrorCode = 10023
	jsErrCodeNoSuitablePeers         jetstream.ErrorCode = 10005
	jsErrCodeReplicasNotSupported    jetstream.ErrorCode = 10074
	jsErrCodeReplicasNotUpdatable    jetstream.ErrorCode = 10061
	jsErrCodeClusterTagsNotSupported jetstream.ErrorCode = 10085
)

// rescale logs a change of the replica count or tags of the existing
// stream name, which the update about to be sent makes: JetStream copies
// the stream to the new servers (or drops copies) while it keeps serving.
// It returns the stream's current replica count, 0 when it does not exist.
func (c *Conn) rescale(ctx context.Context, name string, p Placement) int {
	s, err := c.JS.Stream(ctx, name)
	if err != nil {
		return 0 // missing, or the update below says what is wrong
	}
	cur := s.CachedInfo().Config
	var tags []string
	if cur.Placement != nil {
		tags = cur.Placement.Tags
	}
	if cur.Replicas != p.Replicas || strings.Join(tags, ",") != strings.Join(p.Tags, ",") {
		slog.Info("changing the placement of a NATS stream; JetStream copies it while it keeps serving",
			"stream", name, "replicas_from", cur.Replicas, "replicas_to", p.Replicas, "tags_from", tags, "tags_to", p.Tags)
	}
	return cur.Replicas
}

// explain wraps the failure to create or update what (a stream or bucket,
// currently at from replicas, 0 when new) with what to do about it when
// the cause is the placement.
func (p Placement) explain(what string, from int, err error) error {
	verb := "creating"
	if from > 0 {
		verb = "updating"
	}
	wrapped := fmt.Errorf("%s %s with %d replicas: %w", verb, what, p.Replicas, err)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return wrapped
	}
	switch apiErr.ErrorCode {
	case jsErrCodeReplicasNotSupported:
		return fmt.Errorf("%w; this NATS server is not part of a JetStream cluster, so it keeps 1 copy: run with --nats-replicas 1 (FLUSSO_NATS_REPLICAS), or point --nats-url at a cluster of at least %d servers", wrapped, p.Replicas)
	case jsErrCodeInsufficientResources, jsErrCodeNoSuitablePeers, jsErrCodeClusterTagsNotSupported:
		where := "JetStream servers"
		if len(p.Tags) > 0 {
			where = fmt.Sprintf("JetStream servers tagged %s", strings.Join(p.Tags, ", "))
		}
		return fmt.Errorf("%w; the cluster needs at least %d %s with room for it: lower --nats-replicas (FLUSSO_NATS_REPLICAS), change --nats-placement-tags, or add servers", wrapped, p.Replicas, where)
	case jsErrCodeReplicasNotUpdatable:
		return fmt.Errorf("%w; this NATS version cannot change the replicas of an existing stream: upgrade NATS to 2.9 or later, or keep --nats-replicas at %d", wrapped, from)
	}
	return wrapped
}
