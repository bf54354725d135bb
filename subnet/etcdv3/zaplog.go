package etcdv3

import (
	"maps"
	"slices"

	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// zapCore sends the etcd client's zap logs to a klog.Logger, so that they come out in the
// daemon's format rather than as JSON on stderr. Warnings and errors are logged at V(0),
// info at V(4), debug is dropped. The client's warning for each failed attempt of a request
// ("retrying of unary invoker failed") is logged at V(4) too: the daemon reports a store
// failure once, with its error, when it starts and once when it ends, and an outage would
// otherwise add one warning per bounded request.
type zapCore struct {
	log    klog.Logger
	fields []zapcore.Field
}

func newZapCore(log klog.Logger) zapcore.Core { return &zapCore{log: log} }

func (c *zapCore) Enabled(l zapcore.Level) bool {
	switch {
	case l >= zapcore.WarnLevel:
		return c.log.Enabled()
	case l == zapcore.InfoLevel:
		return c.log.V(4).Enabled()
	default:
		return false
	}
}

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

// quietWarning reports the client warnings that are logged as info (V(4)); see zapCore.
func quietWarning(msg string) bool { return msg == "retrying of unary invoker failed" }

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level == zapcore.WarnLevel && quietWarning(e.Message) {
		e.Level = zapcore.InfoLevel
	}
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	kv := make([]any, 0, 2*len(enc.Fields)+2)
	if e.Level >= zapcore.WarnLevel {
		kv = append(kv, "level", e.Level.String())
	}
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		kv = append(kv, k, enc.Fields[k])
	}
	if e.Level >= zapcore.WarnLevel {
		c.log.Info(e.Message, kv...)
	} else {
		c.log.V(4).Info(e.Message, kv...)
	}
	return nil
}

func (c *zapCore) Sync() error { return nil }
