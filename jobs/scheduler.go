package jobs

import (
	"context"
	"sync"
)

// scheduler runs jobs on a fixed number of workers. Jobs queue per tenant and workers take
// from the tenants in turn, so one tenant's flood of jobs does not starve another's.
type scheduler struct {
	run func(ctx context.Context, id string)

	mu      sync.Mutex
	cond    *sync.Cond
	queues  map[string][]string // tenant → job ids, in order
	order   []string            // tenants with queued jobs, round-robin
	running map[string]context.CancelFunc
	stopped bool
	wg      sync.WaitGroup
	ctx     context.Context
	stopAll context.CancelFunc
}

func newScheduler(workers int, run func(ctx context.Context, id string)) *scheduler {
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &scheduler{run: run, queues: map[string][]string{}, running: map[string]context.CancelFunc{}, ctx: ctx, stopAll: cancel}
	s.cond = sync.NewCond(&s.mu)
	for range workers {
		s.wg.Add(1)
		go s.worker()
	}
	return s
}

func (s *scheduler) enqueue(tenant, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queues[tenant]) == 0 {
		s.order = append(s.order, tenant)
	}
	s.queues[tenant] = append(s.queues[tenant], id)
	s.cond.Signal()
}

// next takes the first job of the next tenant in turn.
func (s *scheduler) next() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.order) == 0 && !s.stopped {
		s.cond.Wait()
	}
	if s.stopped {
		return "", false
	}
	t := s.order[0]
	s.order = s.order[1:]
	q := s.queues[t]
	id := q[0]
	if len(q) > 1 {
		s.queues[t] = q[1:]
		s.order = append(s.order, t)
	} else {
		delete(s.queues, t)
	}
	return id, true
}

func (s *scheduler) worker() {
	defer s.wg.Done()
	for {
		id, ok := s.next()
		if !ok {
			return
		}
		ctx, cancel := context.WithCancel(s.ctx)
		s.mu.Lock()
		s.running[id] = cancel
		s.mu.Unlock()
		s.run(ctx, id)
		cancel()
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
	}
}

// cancel stops a running job's context; a queued job is skipped when its turn comes because
// its status is no longer queued.
func (s *scheduler) cancel(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.running[id]; ok {
		c()
	}
}

// drain stops taking jobs and waits for running ones until ctx ends, then cancels them.
func (s *scheduler) drain(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	s.cond.Broadcast()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.stopAll()
		<-done
	}
}

func (s *scheduler) stop() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.drain(ctx)
}
