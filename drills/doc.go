// Package drills holds ViewPulse's fault drills: tests that run the real
// processes (built from cmd/) against real Redis and PostgreSQL and break
// things on purpose — kill -9 Redis, cut PostgreSQL off, kill workers at
// random moments, make Redis slow — then check that nothing acknowledged was
// lost and that the history equals a sequential model of the accepted events.
// It has no code outside its tests.
package drills
