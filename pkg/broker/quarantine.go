package broker

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

	"github.com/flusso/flusso/proto/flussopb"
)

// QuarantineEntry is one quarantined document.
type QuarantineEntry struct {
	Seq   uint64    `json:"seq"` // sequence on the quarantine stream
	Time  time.Time `json:"time"`
	Sink  string    `json:"sink"` // AssemblerSink: it could not be built
	Index string    `json:"index"`
	ID    string    `json:"id"`
	// Version is the version of the refused build; 0 when not recorded.
	Version uint64 `json:"version"`
	Reason  string `json:"reason"`
}

// Rejected is a document to quarantine: who refused it, what it is and
// why, and the version its rebuild on replay carries.
type Rejected struct {
	Sink    string // AssemblerSink: it could not be built
	Index   string
	ID      string
	Version uint64
	Reason  string
	// Doc is the refused document, kept as the entry's body; without one
	// the reason is.
	Doc *flussopb.Document
}

func (r Rejected) message() (*nats.Msg, error) {
	msg := quarantineMsg(r.Sink, r.Index, r.Index, r.ID, r.Reason)
	msg.Header.Set(HeaderVersion, strconv.FormatUint(r.Version, 10))
	msg.Data = []byte(r.Reason)
	if r.Doc != nil {
		data, err := proto.Marshal(r.Doc)
		if err != nil {
			return nil, fmt.Errorf("encoding quarantined document: %w", err)
		}
		msg.Data = data
	}
	return msg, nil
}

func quarantineMsg(sink, subjectIndex, index, id, reason string) *nats.Msg {
	msg := &nats.Msg{Subject: QuarantineSubject(sink, subjectIndex), Header: nats.Header{}}
	msg.Header.Set(HeaderSink, sink)
	msg.Header.Set(HeaderIndex, index)
	msg.Header.Set(HeaderID, id)
	msg.Header.Set(HeaderReason, reason)
	return msg
}

// PublishQuarantine quarantines a rejected document and waits until the
// stream stored it.
func (c *Conn) PublishQuarantine(ctx context.Context, r Rejected) error {
	msg, err := r.message()
	if err != nil {
		return err
	}
	_, err = c.JS.PublishMsg(ctx, msg)
	return err
}

// PublishQuarantineAsync quarantines a rejected document without waiting
// for the stream to store it.
func (c *Conn) PublishQuarantineAsync(r Rejected) (Sent, error) {
	msg, err := r.message()
	if err != nil {
		return Sent{}, err
	}
	return c.publishAsync(msg)
}

// undecodable stands for the index in the quarantine subject of change
// messages that could not be decoded (no index name starts with "_").
const undecodable = "_undecodable"

// QuarantineUndecodable quarantines a change message that could not be
// decoded, with its bytes when the entry stays within limit, without
// waiting for the stream to store it.
func (c *Conn) QuarantineUndecodable(d *ChangeMsg, limit int) (Sent, error) {
	id := "?"
	if seq := d.Seq(); seq != 0 {
		id = strconv.FormatUint(seq, 10)
	}
	reason := fmt.Sprintf("change message %s of %s (%d bytes) cannot be decoded: %v", id, ChangesStream, d.Len(), d.Err)
	msg := quarantineMsg(AssemblerSink, undecodable, "", id, reason)
	if messageSize(msg)+d.Len() <= limit {
		msg.Data = d.msg.Data()
	}
	return c.publishAsync(msg)
}

func (c *Conn) publishAsync(msg *nats.Msg) (Sent, error) {
	f, err := c.JS.PublishMsgAsync(msg)
	if err != nil {
		return Sent{}, err
	}
	return Sent{Ack: f, Size: messageSize(msg)}, nil
}

// QuarantineFilter selects quarantine entries; empty fields match everything.
type QuarantineFilter struct {
	Index string
	Sink  string
}

func (f QuarantineFilter) subject() string {
	s, ix := "*", "*"
	if f.Sink != "" {
		s = f.Sink
	}
	if f.Index != "" {
		ix = f.Index
	}
	if s == "*" && ix == "*" {
		return QuarantinePrefix + ">"
	}
	return QuarantineSubject(s, ix)
}

// ListQuarantine reads the quarantined documents matching f, oldest first.
func (c *Conn) ListQuarantine(ctx context.Context, f QuarantineFilter) ([]QuarantineEntry, error) {
	stream, err := c.JS.Stream(ctx, QuarantineStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // nothing was ever quarantined
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", QuarantineStream, err)
	}
	subject := f.subject()
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", QuarantineStream, err)
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
		return nil, fmt.Errorf("reading stream %s: %w", QuarantineStream, err)
	}
	var out []QuarantineEntry
	for uint64(len(out)) < total {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", QuarantineStream, err)
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
			return nil, fmt.Errorf("reading stream %s: %w", QuarantineStream, err)
		}
		if got == 0 {
			break // entries removed while reading
		}
	}
	return out, nil
}

func entryOf(subject string, h nats.Header, data []byte, meta *jetstream.MsgMetadata) QuarantineEntry {
	e := QuarantineEntry{
		Seq:    meta.Sequence.Stream,
		Time:   meta.Timestamp.UTC(),
		Sink:   h.Get(HeaderSink),
		Index:  h.Get(HeaderIndex),
		ID:     h.Get(HeaderID),
		Reason: h.Get(HeaderReason),
	}
	e.Version, _ = strconv.ParseUint(h.Get(HeaderVersion), 10, 64)
	// Older entries name the sink only in the subject, and the assemblers'
	// carry the reason as the message body.
	if e.Sink == "" {
		rest := strings.TrimPrefix(subject, QuarantinePrefix)
		e.Sink, _, _ = strings.Cut(rest, ".")
	}
	if e.Reason == "" && e.Sink == AssemblerSink {
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
	Skipped []QuarantineEntry
}

// replayBatch bounds the keys of one rebuild request, like a backfill batch.
const replayBatch = 500

// Replay asks the assemblers to build the documents of entries again from
// the current data, as BACKFILL changes for the sink that refused them
// (every sink for documents the assemblers could not build), versioned with
// the refused build's version so the rebuild replaces whatever older build
// the sink holds. Each entry is removed once its request is stored; a
// document refused again is quarantined again.
func (c *Conn) Replay(ctx context.Context, entries []QuarantineEntry) (Replayed, error) {
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
	stream, err := c.JS.Stream(ctx, QuarantineStream)
	if err != nil && len(order) > 0 {
		return res, fmt.Errorf("opening stream %s: %w", QuarantineStream, err)
	}
	for _, k := range order {
		g := groups[k]
		var sinks []string
		if g.sink != AssemblerSink {
			sinks = []string{g.sink}
		}
		slices.Sort(g.seqs)
		for start := 0; start < len(g.ids); start += replayBatch {
			keys := g.ids[start:min(start+replayBatch, len(g.ids))]
			ch := &flussopb.Change{Op: flussopb.ChangeOp_BACKFILL, Index: g.index, Keys: keys, Sinks: sinks, CommitLsn: g.version}
			// A replay repeated after a crash between publishing and removing
			// the entries is deduplicated.
			id := fmt.Sprintf("replay-%s-%s-%d-%d-%d", g.sink, g.index, g.seqs[0], g.seqs[len(g.seqs)-1], start)
			if _, err := c.PublishChange(ctx, ch, id); err != nil {
				return res, fmt.Errorf("requesting a rebuild of %d documents of %s: %w", len(keys), g.index, err)
			}
		}
		for _, seq := range g.seqs {
			if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return res, fmt.Errorf("removing replayed entry %d from %s: %w", seq, QuarantineStream, err)
			}
		}
		res.Entries += len(g.seqs)
		res.Documents += len(g.ids)
	}
	return res, nil
}
