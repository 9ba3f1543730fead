package capture

import "time"

// SetLiveness sets the stream's status interval and silence limit for a
// test and returns what restores them.
func SetLiveness(every, silence time.Duration) (restore func()) {
	prevEvery, prevSilence := statusEvery, silenceLimit
	statusEvery, silenceLimit = every, silence
	return func() { statusEvery, silenceLimit = prevEvery, prevSilence }
}

// WrapKeys has the capture read each index's keys through wrap.
func WrapKeys(cfg *Config, wrap func(KeySource) KeySource) { cfg.wrapKeys = wrap }
