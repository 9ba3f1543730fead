package capture

import "time"

// SetLiveness sets the stream's status interval and silence limit for a
// test and returns what restores them.
func SetLiveness(every, silence time.Duration) (restore func()) {
	prevEvery, prevSilence := statusEvery, silenceLimit
	statusEvery, silenceLimit = every, silence
	return func() { statusEvery, silenceLimit = prevEvery, prevSilence }
}
