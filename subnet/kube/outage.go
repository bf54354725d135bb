package kube

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// nodeListWatch is the informer's one list and one watch of the Nodes. A call that fails
// because the API server cannot be reached (a transport error, not an answer) is retried here
// every 0.5-1 s until it works, with one log line when the outage starts and one when it
// ends. client-go's reflector would instead back off exponentially up to a minute, and so
// catch up long after the server is back.
func (r *Registry) nodeListWatch(c API) cache.ListerWatcher {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return untilReachable(ctx, r, func() (runtime.Object, error) { return c.ListNodes(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return untilReachable(ctx, r, func() (watch.Interface, error) { return c.WatchNodes(ctx, o) })
		},
	}
	return cache.ToListWatcherWithWatchListSemantics(lw, c)
}

// untilReachable calls call until it returns something other than a transport error, or ctx
// ends. An answer of the server (an API status, e.g. forbidden or resource version too
// old) is returned to the reflector, which knows what to do with it.
func untilReachable[T any](ctx context.Context, r *Registry, call func() (T, error)) (T, error) {
	for {
		v, err := call()
		if err == nil {
			r.apiReachable(nil)
			return v, nil
		}
		var status apierrors.APIStatus
		if errors.As(err, &status) || ctx.Err() != nil {
			if status != nil {
				r.apiReachable(nil) // it answered
			}
			return v, err
		}
		r.apiReachable(err)
		t := time.NewTimer(500*time.Millisecond + rand.N(500*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// apiReachable records whether the API server answered (err nil) or not, logging the
// transitions.
func (r *Registry) apiReachable(err error) {
	r.mu.Lock()
	down := r.apiDown
	switch {
	case err != nil && down.IsZero():
		r.apiDown = time.Now()
	case err == nil && !down.IsZero():
		r.apiDown = time.Time{}
	}
	r.mu.Unlock()
	switch {
	case err != nil && down.IsZero():
		r.log.Error(err, "The Kubernetes API server is unavailable: lost the node watch; the data plane is kept as it is until it answers again")
	case err == nil && !down.IsZero():
		r.log.Info("The Kubernetes API server answers again: watching the nodes from where the watch stopped", "after", time.Since(down).Round(time.Millisecond))
	}
}
