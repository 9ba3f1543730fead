package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flusso/flusso/pkg/redact"
	"github.com/flusso/flusso/pkg/retry"
)

// PublishTimeout bounds the wait for the stream's acknowledgement of an
// asynchronous publish. Without it a publish whose stream leader died
// after receiving it (a replicated stream elects another) would wait for
// an answer that never comes; with it the publisher fails the batch or
// session, and what it sends again is deduplicated or idempotent.
const PublishTimeout = 15 * time.Second

// electionWait bounds how long a publish with a message id is retried
// while its stream has no leader: JetStream elects one within a few
// seconds of losing one.
const electionWait = 30 * time.Second

// publishMsg publishes msg and waits for the stream to store it. A message
// with an id is retried while the stream cannot answer (no leader during
// an election, a server gone, a timeout): the stream deduplicates by the
// id, so a publish stored before its answer was lost is not stored twice.
func (c *Conn) publishMsg(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	if msg.Header.Get(jetstream.MsgIDHeader) == "" {
		return c.JS.PublishMsg(ctx, msg)
	}
	var (
		pause    = retry.Delay{Limit: 2 * time.Second}
		deadline = time.Now().Add(electionWait)
	)
	for attempt := 1; ; attempt++ {
		ack, err := c.JS.PublishMsg(ctx, msg)
		if err == nil || !leaderless(ctx, err) || time.Now().After(deadline) {
			return ack, err
		}
		d := pause.Next()
		slog.Debug("publish found no stream leader; retrying", "subject", msg.Subject, "attempt", attempt, "in", d, "err", redact.Error(err))
		if err := retry.Sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("publishing to %s: %w", msg.Subject, err)
		}
	}
}

// jsErrCodeClusterNotAvailable is JetStream's "JetStream system
// temporarily unavailable", answered while a stream has no leader.
const jsErrCodeClusterNotAvailable jetstream.ErrorCode = 10008

// leaderless reports whether a request failed because JetStream could not
// answer for now (no leader, a server gone), while ctx still runs.
func leaderless(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeClusterNotAvailable)
}
