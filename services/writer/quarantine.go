package writer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flusso/flusso/pkg/broker"
	"github.com/flusso/flusso/proto/flussopb"
)

// Entry is one quarantined document.
type Entry struct {
	Seq   uint64    `json:"seq"` // sequence on the quarantine stream
	Time  time.Time `json:"time"`
	Sink  string    `json:"sink"` // broker.AssemblerSink: it could not be built
	Index string    `json:"index"`
	ID    string    `json:"id"`
	// Version is the version of the refused build; 0 when not recorded.
	Version uint64 `json:"version"`
	Reason  string `json:"reason"`
}

// Filter selects quarantine entries; empty fields match everything.
type Filter struct {
	Index string
	Sink  string
}

func (f Filter) subject() string {
	s, ix := "*", "*"
	if f.Sink != "" {
		s = f.Sink
	}
	if f.Index != "" {
		ix = f.Index
	}
	if s == "*" && ix == "*" {
		return broker.QuarantinePrefix + ">"
	}
	return broker.QuarantineSubject(s, ix)
}

// ListQuarantine reads the quarantined documents matching f, oldest first.
func ListQuarantine(ctx context.Context, js jetstream.JetStream, f Filter) ([]Entry, error) {
	stream, err := js.Stream(ctx, broker.QuarantineStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // nothing was ever quarantined
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", broker.QuarantineStream, err)
	}
	subject := f.subject()
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", broker.QuarantineStream, err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	if total == 0 {
		return nil, nil
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", broker.QuarantineStream, err)
	}
	var out []Entry
	for uint64(len(out)) < total {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", broker.QuarantineStream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("reading quarantine entry metadata: %w", err)
			}
			out = append(out, entryOf(m.Subject(), m.Headers(), m.Data(), meta))
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", broker.QuarantineStream, err)
		}
		if got == 0 {
			break // entries removed while reading
		}
	}
	return out, nil
}

func entryOf(subject string, h nats.Header, data []byte, meta *jetstream.MsgMetadata) Entry {
	e := Entry{
		Seq:    meta.Sequence.Stream,
		Time:   meta.Timestamp.UTC(),
		Sink:   h.Get(broker.HeaderSink),
		Index:  h.Get(broker.HeaderIndex),
		ID:     h.Get(broker.HeaderID),
		Reason: h.Get(broker.HeaderReason),
	}
	e.Version, _ = strconv.ParseUint(h.Get(broker.HeaderVersion), 10, 64)
	// Older entries name the sink only in the subject, and the assemblers'
	// carry the reason as the message body.
	if e.Sink == "" {
		rest := strings.TrimPrefix(subject, broker.QuarantinePrefix)
		e.Sink, _, _ = strings.Cut(rest, ".")
	}
	if e.Reason == "" && e.Sink == broker.AssemblerSink {
		e.Reason = string(data)
	}
	return e
}

// Replayed is the outcome of a replay.
type Replayed struct {
	Entries   int // entries replayed and removed
	Documents int // distinct documents asked for
	// Skipped lists entries left in quarantine: without a recorded version
	// a rebuild could be refused as older than what the sink holds.
	Skipped []Entry
}

// replayBatch bounds the keys of one rebuild request, like a backfill batch.
const replayBatch = 500

// Replay asks the assemblers to build the documents of entries again from
// the current data, as BACKFILL changes for the sink that refused them
// (every sink for documents the assemblers could not build), versioned with
// the refused build's version so the rebuild replaces whatever older build
// the sink holds. Each entry is removed once its request is stored; a
// document refused again is quarantined again.
func Replay(ctx context.Context, js jetstream.JetStream, entries []Entry) (Replayed, error) {
	var res Replayed
	type group struct {
		index, sink string
		version     uint64
		ids         []string
		seen        map[string]bool
		seqs        []uint64
	}
	groups := map[[2]string]*group{}
	var order [][2]string
	for _, e := range entries {
		if e.Version == 0 {
			res.Skipped = append(res.Skipped, e)
			continue
		}
		k := [2]string{e.Index, e.Sink}
		g, ok := groups[k]
		if !ok {
			g = &group{index: e.Index, sink: e.Sink, seen: map[string]bool{}}
			groups[k] = g
			order = append(order, k)
		}
		// One version for the group: any refused build's version is below
		// every change committed after it, so a later change still wins.
		g.version = max(g.version, e.Version)
		g.seqs = append(g.seqs, e.Seq)
		if !g.seen[e.ID] {
			g.seen[e.ID] = true
			g.ids = append(g.ids, e.ID)
		}
	}
	stream, err := js.Stream(ctx, broker.QuarantineStream)
	if err != nil && len(order) > 0 {
		return res, fmt.Errorf("opening stream %s: %w", broker.QuarantineStream, err)
	}
	for _, k := range order {
		g := groups[k]
		var sinks []string
		if g.sink != broker.AssemblerSink {
			sinks = []string{g.sink}
		}
		slices.Sort(g.seqs)
		for start := 0; start < len(g.ids); start += replayBatch {
			keys := g.ids[start:min(start+replayBatch, len(g.ids))]
			ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: g.index, Keys: keys, Sinks: sinks, CommitLsn: g.version}
			data, err := proto.Marshal(ch)
			if err != nil {
				return res, fmt.Errorf("encoding a replay of %s: %w", g.index, err)
			}
			msg := &nats.Msg{Subject: broker.ChangesSubject, Data: data, Header: nats.Header{}}
			// A replay repeated after a crash between publishing and removing
			// the entries is deduplicated.
			msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("replay-%s-%s-%d-%d-%d", g.sink, g.index, g.seqs[0], g.seqs[len(g.seqs)-1], start))
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				return res, fmt.Errorf("requesting a rebuild of %d documents of %s: %w", len(keys), g.index, err)
			}
		}
		for _, seq := range g.seqs {
			if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return res, fmt.Errorf("removing replayed entry %d from %s: %w", seq, broker.QuarantineStream, err)
			}
		}
		res.Entries += len(g.seqs)
		res.Documents += len(g.ids)
	}
	return res, nil
}
