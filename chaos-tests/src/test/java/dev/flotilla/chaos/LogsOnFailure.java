package dev.flotilla.chaos;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.AfterTestExecutionCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * After each test: when it failed, prints the log tails of every cluster it started (and keeps
 * their directories for a closer look); when it passed, removes their directories (unless
 * {@code -Dchaos.keep=true}).
 */
final class LogsOnFailure implements AfterTestExecutionCallback {
  @Override
  public void afterTestExecution(ExtensionContext context) {
    List<TestCluster> clusters;
    synchronized (TestCluster.STARTED) {
      clusters = new ArrayList<>(TestCluster.STARTED);
      TestCluster.STARTED.clear();
    }
    boolean failed = context.getExecutionException().isPresent();
    for (TestCluster c : clusters) {
      c.close(); // idempotent: no process outlives the test even if it forgot
      if (failed) {
        System.err.println("===== " + context.getDisplayName() + " failed: logs of " + c.name + " (kept in "
            + c.local.baseDir() + ")\n" + c.logTails(150));
      } else if (Boolean.getBoolean("chaos.keep")) {
        System.out.println("[chaos] kept " + c.local.baseDir() + " (-Dchaos.keep=true)");
      } else {
        delete(c.local.baseDir());
      }
    }
  }

  private static void delete(Path dir) {
    try (Stream<Path> all = Files.walk(dir)) {
      all.sorted(Comparator.reverseOrder()).forEach(p -> {
        try {
          Files.deleteIfExists(p);
        } catch (IOException ignored) {
          // stays in /tmp
        }
      });
    } catch (IOException | RuntimeException ignored) {
      // already gone
    }
  }
}
