package dev.flotilla.chaos;

import java.util.Map;
import java.util.TreeMap;
import java.util.List;

/**
 * Samples, every {@link #PERIOD_MS} ms while a fault plays out, the sandboxes with more than one
 * live VM on this machine: the report's "duplicate live incarnations seen". A sample reads
 * /proc (a few ms for a cluster of this size), so it runs often; still, two VMs that overlap for
 * less than a period can slip between samples: the history checker (an old incarnation serving
 * after a newer one) is the proof, this the second line.
 */
final class DuplicateSampler implements AutoCloseable {
  private final TestCluster cluster;
  private final Thread thread;
  private volatile boolean running = true;
  static final long PERIOD_MS = Long.getLong("chaos.sample-ms", 50);
  private int max;
  private long samples;
  private final Map<String, List<String>> examples = new TreeMap<>();

  private final long created = System.nanoTime();

  DuplicateSampler(TestCluster cluster) {
    this.cluster = cluster;
    this.thread = new Thread(this::loop, "chaos-duplicate-sampler");
    thread.setDaemon(true);
    thread.start();
  }

  private void loop() {
    while (running) {
      Map<String, List<Long>> dup = new TreeMap<>();
      cluster.local.liveAgents().forEach((id, pids) -> {
        if (pids.size() > 1) dup.put(id, pids);
      });
      synchronized (this) {
        samples++;
        max = Math.max(max, dup.size());
        dup.forEach((id, pids) -> {
          if (examples.size() < 5 && !examples.containsKey(id)) {
            List<String> d = new java.util.ArrayList<>(pids.stream().map(DuplicateSampler::describe).toList());
            d.add("seen " + (System.nanoTime() - created) / 1_000_000 + " ms after the fault began");
            examples.put(id, d);
          }
        });
      }
      try {
        Thread.sleep(PERIOD_MS); // sampling period, not a wait for a condition
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  /** Samples taken so far. */
  synchronized long samples() {
    return samples;
  }

  /** The most sandboxes seen with two live VMs at one sample. */
  synchronized int max() {
    return max;
  }

  /**
   * "pid@nI#incarnation ppid=P" from /proc: which node's data dir (named by the agent's own
   * command line, or under runc by its runc ancestor's), which incarnation, whose child.
   */
  static String describe(long pid) {
    try {
      List<String> argv = argv(pid);
      String inc = argv.indexOf("--incarnation") >= 0 ? argv.get(argv.indexOf("--incarnation") + 1) : "?";
      String ppid = ppid(pid);
      String node = "?";
      long at = pid;
      for (int depth = 0; depth < 8 && at > 1; depth++) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("/(n\\d+)/vms/").matcher(String.join(" ", argv(at)));
        if (m.find()) {
          node = m.group(1);
          break;
        }
        at = Long.parseLong(ppid(at));
      }
      return pid + "@" + node + "#" + inc + " ppid=" + ppid;
    } catch (java.io.IOException | RuntimeException e) {
      return pid + "@gone";
    }
  }

  private static List<String> argv(long pid) throws java.io.IOException {
    byte[] raw = java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/proc", Long.toString(pid), "cmdline"));
    return java.util.Arrays.asList(new String(raw, java.nio.charset.StandardCharsets.UTF_8).split("\0"));
  }

  private static String ppid(long pid) throws java.io.IOException {
    String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc", Long.toString(pid), "stat"));
    return stat.substring(stat.lastIndexOf(')') + 2).split(" ")[1];
  }

  synchronized Map<String, List<String>> examples() {
    return new TreeMap<>(examples);
  }

  @Override
  public void close() {
    running = false;
    thread.interrupt();
    try {
      thread.join(5000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
