package main

// footprint is what one phase of a distributed run put on the broker's
// streams, per unit of work (a backfilled document, a live change): how
// much a backlog of a million such units holds in JetStream.
type footprint struct {
	Phase string
	Units int64
	// ChangeMsgs and DocMsgs are the messages stored during the phase
	// (the streams' last sequence at its end minus at its start, read once
	// a second).
	ChangeMsgs, DocMsgs uint64
	// ChangeMsgBytes and DocMsgBytes are the stored bytes per message at
	// the largest backlog seen during the phase (0: never one).
	ChangeMsgBytes, DocMsgBytes float64
}

// perUnit is the stored bytes of one stream per unit of work.
func perUnit(msgBytes float64, msgs uint64, units int64) float64 {
	if units <= 0 {
		return 0
	}
	return msgBytes * float64(msgs) / float64(units)
}

// phaseFootprint reads the backlog samples of a phase: the messages
// stored are counted from the last sample at or before from (none: the
// streams, created with the run, start empty) to the last one at or
// before to (each phase ends once all it published is consumed).
func phaseFootprint(phase string, units int64, pts []backlogPoint, from, to float64) footprint {
	f := footprint{Phase: phase, Units: units}
	var first, last backlogPoint
	var changesTop, docsTop uint64
	for _, pt := range pts {
		if pt.T > to {
			break
		}
		last = pt
		if pt.T <= from {
			first = pt
			continue
		}
		if c := pt.ChangesStream; c.Msgs > changesTop {
			changesTop, f.ChangeMsgBytes = c.Msgs, float64(c.Bytes)/float64(c.Msgs)
		}
		if d := pt.DocsStream; d.Msgs > docsTop {
			docsTop, f.DocMsgBytes = d.Msgs, float64(d.Bytes)/float64(d.Msgs)
		}
	}
	if last.ChangesStream.LastSeq >= first.ChangesStream.LastSeq && last.DocsStream.LastSeq >= first.DocsStream.LastSeq {
		f.ChangeMsgs = last.ChangesStream.LastSeq - first.ChangesStream.LastSeq
		f.DocMsgs = last.DocsStream.LastSeq - first.DocsStream.LastSeq
	}
	return f
}

// footprints are the phases of a distributed run.
func (s *scaleRes) footprints() []footprint {
	var out []footprint
	if b := s.Backfill; b != nil {
		out = append(out, phaseFootprint("backfill (per document)", b.Docs, s.Backlog, 0, b.Seconds))
	}
	if l := s.Live; l != nil && s.LiveTo > s.LiveFrom {
		out = append(out, phaseFootprint("live (per change)", l.Changes, s.Backlog, s.LiveFrom, s.LiveTo))
	}
	return out
}

// footprintTable prints the broker's share of the first distributed run.
func footprintTable(p func(string, ...any), r *results) {
	if len(r.Scale) == 0 {
		return
	}
	s := r.Scale[0]
	fs := s.footprints()
	if len(fs) == 0 {
		return
	}
	p("### Broker footprint (%s)\n\n", s.label())
	p("Stored bytes as JetStream counts them (`nats stream info`: payload, headers, subject, record), at the largest backlog of the phase; messages from the streams' sequences, read once a second.\n\n")
	p("| phase | units | FLUSSO_CHANGES msgs | bytes/msg | bytes/unit (= MB per million) | FLUSSO_DOCS msgs | bytes/msg | bytes/unit (= MB per million) | nats-server peak RSS MB |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	rss := "—"
	if s.Backfill != nil {
		rss = f0(s.Backfill.PeakRSSMB["nats-server"])
	}
	for _, f := range fs {
		if f.ChangeMsgs == 0 && f.DocMsgs == 0 {
			// No samples (the sampler could not reach the broker): no figure.
			continue
		}
		c, d := perUnit(f.ChangeMsgBytes, f.ChangeMsgs, f.Units), perUnit(f.DocMsgBytes, f.DocMsgs, f.Units)
		p("| %s | %d | %d | %s | %s | %d | %s | %s | %s |\n", f.Phase, f.Units, f.ChangeMsgs, f0(f.ChangeMsgBytes), f0(c),
			f.DocMsgs, f0(f.DocMsgBytes), f0(d), rss)
	}
	p("\n")
}
