package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// RampConfig describes a search for the highest edit rate a server
// sustains: Runs at Start, Start×Factor, … (at most Steps of them), each on
// fresh documents (so that no step inherits a longer history), until one
// fails.
type RampConfig struct {
	Run      Config        // Rate is ignored; Start is the first step's
	Start    float64       // edits per second of the first step
	Factor   float64       // each step's rate over the last; > 1
	Steps    int           // at most this many steps
	P99Bound time.Duration // a step passes when its p99 fan-out is at most this...
	// ...nothing was lost, nothing failed, no connection ended, and the
	// achieved edit rate is at least MinAchieved of the target (zero means
	// 0.95).
	MinAchieved float64
	// Pause between steps, so that a step's backlog (compactions, the
	// last step's idle rooms) is not the next one's. Zero means 2 s.
	Pause time.Duration
	// Step, if set, is called with each step's result as it ends.
	Step func(RampStep)
}

// RampStep is one step's result and verdict.
type RampStep struct {
	Result
	Passed bool `json:"passed"`
	// Why it failed: the bound, a loss, errors, disconnects, or a load
	// generator that could not keep the rate.
	Failed []string `json:"failed,omitempty"`
}

// RampResult is the whole search.
type RampResult struct {
	P99BoundMS float64    `json:"p99_bound_ms"`
	Steps      []RampStep `json:"steps"`
	// Best is the highest passing step's target rate (0 when none passed);
	// BestAchieved its achieved rate.
	Best         float64 `json:"best_rate"`
	BestAchieved float64 `json:"best_rate_achieved"`
	// Limit says what stopped the search: the first failing step's
	// reasons, or that the step limit was reached.
	Limit string `json:"limit"`
}

// Ramp runs the search. It returns an error only when a step could not be
// set up; a step that fails its criteria ends the search normally.
func Ramp(ctx context.Context, cfg RampConfig) (RampResult, error) {
	if cfg.Factor <= 1 || cfg.Start <= 0 || cfg.Steps < 1 || cfg.P99Bound <= 0 {
		return RampResult{}, errors.New("ramp: need a start rate > 0, a factor > 1, a step count >= 1 and a p99 bound > 0")
	}
	if cfg.MinAchieved <= 0 {
		cfg.MinAchieved = 0.95
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 2 * time.Second
	}
	out := RampResult{P99BoundMS: float64(cfg.P99Bound) / float64(time.Millisecond), Limit: fmt.Sprintf("step limit (%d) reached", cfg.Steps)}
	rate := cfg.Start
	for i := range cfg.Steps {
		if i > 0 {
			select {
			case <-time.After(cfg.Pause):
			case <-ctx.Done():
				return out, ctx.Err()
			}
		}
		rc := cfg.Run
		rc.Rate = rate
		if rc.Seed != 0 {
			rc.Seed += uint64(i)
		}
		res, err := Run(ctx, rc)
		if err != nil {
			return out, fmt.Errorf("ramp step at %.0f edits/s: %w", rate, err)
		}
		step := judge(res, cfg)
		out.Steps = append(out.Steps, step)
		if cfg.Step != nil {
			cfg.Step(step)
		}
		if !step.Passed {
			out.Limit = fmt.Sprintf("at %.0f edits/s: %s", rate, strings.Join(step.Failed, "; "))
			break
		}
		out.Best, out.BestAchieved = rate, res.EditRate
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		rate *= cfg.Factor
	}
	return out, nil
}

// judge applies the ramp's pass criteria to one run.
func judge(res Result, cfg RampConfig) RampStep {
	s := RampStep{Result: res}
	bound := float64(cfg.P99Bound) / float64(time.Millisecond)
	if res.FanOut.P99 > bound {
		s.Failed = append(s.Failed, fmt.Sprintf("p99 fan-out %.1f ms over the %.1f ms bound", res.FanOut.P99, bound))
	}
	if res.Lost > 0 {
		s.Failed = append(s.Failed, fmt.Sprintf("%d of %d deliveries lost", res.Lost, res.Expected))
	}
	if res.Errors > 0 {
		s.Failed = append(s.Failed, fmt.Sprintf("%d errors", res.Errors))
	}
	var disc int64
	for _, n := range res.Disconnects {
		disc += n
	}
	if disc > 0 {
		s.Failed = append(s.Failed, fmt.Sprintf("%d disconnects %v", disc, res.Disconnects))
	}
	if res.EditRate < cfg.MinAchieved*res.RateTarget {
		s.Failed = append(s.Failed, fmt.Sprintf("achieved %.0f of %.0f edits/s", res.EditRate, res.RateTarget))
	}
	s.Passed = len(s.Failed) == 0
	return s
}
