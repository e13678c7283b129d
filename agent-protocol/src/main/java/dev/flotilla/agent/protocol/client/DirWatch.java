package dev.flotilla.agent.protocol.client;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;

/** A running WatchDir: its events go to the {@link WatchListener} it was started with until it ends. */
public interface DirWatch {

  /** The watched directory, absolute inside the sandbox. */
  String path();

  /** Directories the agent watches for it (1 unless recursive). */
  int watchedDirs();

  /** Recursive: the tree had more directories than the agent watches for one watch. */
  boolean partial();

  /** Ends the watch in the agent; completes once the agent has answered. */
  CompletableFuture<Void> cancel(Duration deadline);

  /** Completes with the agent's reason when the watch has ended, exceptionally when the connection broke first. */
  CompletableFuture<String> ended();
}
