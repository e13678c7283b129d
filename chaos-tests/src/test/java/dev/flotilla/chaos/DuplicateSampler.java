package dev.flotilla.chaos;

import java.util.Map;
import java.util.TreeMap;
import java.util.List;

/**
 * Samples, every 250 ms while a fault plays out, the sandboxes with more than one live VM on this
 * machine: the report's "duplicate live incarnations seen".
 */
final class DuplicateSampler implements AutoCloseable {
  private final TestCluster cluster;
  private final Thread thread;
  private volatile boolean running = true;
  private int max;
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
        Thread.sleep(250); // sampling period, not a wait for a condition
      } catch (InterruptedException e) {
        return;
      }
    }
  }

  /** The most sandboxes seen with two live VMs at one sample. */
  synchronized int max() {
    return max;
  }

  /** "pid@nI#incarnation ppid=P" from /proc: which node's data dir, which incarnation, whose child. */
  static String describe(long pid) {
    try {
      byte[] raw = java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/proc", Long.toString(pid), "cmdline"));
      List<String> argv = java.util.Arrays.asList(new String(raw, java.nio.charset.StandardCharsets.UTF_8).split("\0"));
      String listen = argv.indexOf("--listen") >= 0 ? argv.get(argv.indexOf("--listen") + 1) : "?";
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("/(n\\d+)/vms/").matcher(listen);
      String node = m.find() ? m.group(1) : listen;
      String inc = argv.indexOf("--incarnation") >= 0 ? argv.get(argv.indexOf("--incarnation") + 1) : "?";
      String stat = java.nio.file.Files.readString(java.nio.file.Path.of("/proc", Long.toString(pid), "stat"));
      String ppid = stat.substring(stat.lastIndexOf(')') + 2).split(" ")[1];
      return pid + "@" + node + "#" + inc + " ppid=" + ppid;
    } catch (java.io.IOException | RuntimeException e) {
      return pid + "@gone";
    }
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
