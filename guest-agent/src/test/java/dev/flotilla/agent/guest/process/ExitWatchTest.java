package dev.flotilla.agent.guest.process;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** Exits are reported even when the JVM cannot give onExit's completion a thread (a sandbox out of pids). */
class ExitWatchTest {

  /** A process whose onExit fails as it does without a thread; it ends when told. */
  static final class Starved extends Process {
    volatile boolean alive = true;

    @Override
    public CompletableFuture<Process> onExit() {
      throw new OutOfMemoryError("unable to create native thread: possibly out of memory or process/resource limits reached");
    }

    @Override
    public boolean isAlive() {
      return alive;
    }

    @Override
    public int exitValue() {
      if (alive) throw new IllegalThreadStateException("still running");
      return 137;
    }

    @Override
    public OutputStream getOutputStream() {
      return OutputStream.nullOutputStream();
    }

    @Override
    public InputStream getInputStream() {
      return InputStream.nullInputStream();
    }

    @Override
    public InputStream getErrorStream() {
      return InputStream.nullInputStream();
    }

    @Override
    public int waitFor() {
      throw new UnsupportedOperationException();
    }

    @Override
    public void destroy() {
      alive = false;
    }
  }

  @Test
  void anExitIsReportedWithoutAThreadForOnExit() {
    ExitWatch watch = new ExitWatch(Duration.ofMillis(20));
    Starved p = new Starved();
    CompletableFuture<ProcessExit> exit = watch.exitOf(p);
    assertFalse(exit.isDone());
    p.alive = false;
    ProcessExit e = await().atMost(Duration.ofSeconds(5)).until(() -> exit.getNow(null), x -> x != null);
    assertEquals(new ProcessExit(0, 9), e, "137: killed by SIGKILL");
  }

  @Test
  void aRealProcessIsReportedByOnExitOrTheWatchAlike() throws Exception {
    ExitWatch watch = new ExitWatch(Duration.ofHours(1)); // the watch never looks: onExit must do it
    Process p = new ProcessBuilder("sh", "-c", "exit 3").start();
    assertEquals(new ProcessExit(3, 0), watch.exitOf(p).get(10, java.util.concurrent.TimeUnit.SECONDS));
  }
}
