package dev.flotilla.agent.guest.process;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Reports the exit of the processes the agent started, also when the sandbox is out of pids.
 *
 * <p>{@link Process#onExit()} completes on a thread it makes then (the JVM's async pool, which with
 * one CPU, as in most sandboxes, is a new thread per task); a sandbox out of pids gives it none, and
 * the exit was never reported: a WaitProcess that never answered. So the exit is taken from
 * whichever comes first: onExit, or this one thread, made when the agent starts, which looks at the
 * watched processes every {@code every} (the JDK's own reaper has already waited for them: a
 * look is a field read).
 */
final class ExitWatch {
  private final Map<Process, CompletableFuture<ProcessExit>> watched = new ConcurrentHashMap<>();
  private final long everyMillis;

  ExitWatch(Duration every) {
    this.everyMillis = every.toMillis();
    Thread t = new Thread(this::run, "agent-exit-watch");
    t.setDaemon(true);
    t.start();
  }

  /** The exit of {@code p}, reported once. */
  CompletableFuture<ProcessExit> exitOf(Process p) {
    CompletableFuture<ProcessExit> exit = new CompletableFuture<>();
    watched.put(p, exit);
    exit.whenComplete((e, t) -> watched.remove(p));
    try {
      p.onExit().whenComplete((x, t) -> report(p, exit));
    } catch (OutOfMemoryError noThread) {
      // no thread for onExit's completion: the watch reports it
    }
    return exit;
  }

  private void run() {
    while (true) {
      try {
        Thread.sleep(everyMillis);
      } catch (InterruptedException e) {
        return;
      }
      for (var e : watched.entrySet()) {
        if (!e.getKey().isAlive()) report(e.getKey(), e.getValue());
      }
    }
  }

  private static void report(Process p, CompletableFuture<ProcessExit> exit) {
    exit.complete(ProcessExit.fromExitValue(p.exitValue()));
  }
}
