package main

import "context"

func projectorPhase(ctx context.Context, e *env, r *Results) error { return nil }
func lagPhase(ctx context.Context, e *env, r *Results) error       { return nil }
func steadyPhase(ctx context.Context, e *env, r *Results) error    { return nil }
