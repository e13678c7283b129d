package dev.flotilla.bench;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.management.ObjectName;

/**
 * The live heap of this JVM: used heap after explicit full GCs (MemoryMXBean), and the class
 * histogram of live objects (the same as {@code jcmd <pid> GC.class_histogram}, which also runs a
 * full GC first) through the DiagnosticCommand MBean.
 */
final class HeapProbe {
  private static final Pattern ROW = Pattern.compile("^\\s*\\d+:\\s+(\\d+)\\s+(\\d+)\\s+(\\S+).*$");

  private HeapProbe() {}

  /**
   * One reading: heap used after GC (the smallest of a few), RSS and threads, and the live-object
   * class histogram, kept in a file (not on the heap, so a reading does not weigh on the next).
   */
  record Reading(long usedAfterGc, Path histogramFile, long rssBytes, int threads) {
    Map<String, long[]> histogram() throws Exception {
      return parse(Files.readString(histogramFile));
    }

    long histogramBytes() throws Exception {
      return histogram().values().stream().mapToLong(v -> v[1]).sum();
    }
  }

  static Reading read(Path histogramFile) throws Exception {
    long min = Long.MAX_VALUE;
    for (int i = 0; i < 4; i++) {
      System.gc();
      Thread.sleep(200);
      min = Math.min(min, ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed());
    }
    long rss = rss();
    int threads = ManagementFactory.getThreadMXBean().getThreadCount();
    Files.writeString(histogramFile, histogramText());
    return new Reading(min, histogramFile, rss, threads);
  }

  /** class name -> {instances, bytes} of live objects. */
  static String histogramText() throws Exception {
    return (String) ManagementFactory.getPlatformMBeanServer().invoke(
        new ObjectName("com.sun.management:type=DiagnosticCommand"), "gcClassHistogram",
        new Object[] {new String[0]}, new String[] {String[].class.getName()});
  }

  static Map<String, long[]> parse(String out) {
    Map<String, long[]> m = new HashMap<>();
    for (String line : out.split("\n")) {
      Matcher x = ROW.matcher(line);
      if (x.matches()) m.merge(x.group(3), new long[] {Long.parseLong(x.group(1)), Long.parseLong(x.group(2))},
          (a, b) -> new long[] {a[0] + b[0], a[1] + b[1]});
    }
    return m;
  }

  static long rss() {
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
        if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
      }
    } catch (Exception ignored) {
      // not on Linux
    }
    return -1;
  }

  /** The group a class counts under in the report. */
  static String group(String cls) {
    if (cls.startsWith("dev.flotilla.")) return "dev.flotilla.*";
    if (cls.startsWith("org.apache.pekko.")) return "org.apache.pekko.*";
    if (cls.startsWith("org.h2.")) return "org.h2.* (journal db)";
    if (cls.startsWith("scala.")) return "scala.*";
    if (cls.startsWith("java.") || cls.startsWith("jdk.") || cls.startsWith("sun.")) return "java.*/jdk.* objects";
    if (cls.startsWith("[")) return "arrays ([B, [Ljava.lang.Object; ...)";
    return "other libraries";
  }

  /** Bytes per group of (after - before), largest first. */
  static Map<String, Long> groupDelta(Map<String, long[]> before, Map<String, long[]> after) {
    Map<String, Long> g = new HashMap<>();
    for (String cls : union(before, after)) {
      long d = bytes(after, cls) - bytes(before, cls);
      g.merge(group(cls), d, Long::sum);
    }
    Map<String, Long> sorted = new LinkedHashMap<>();
    g.entrySet().stream().sorted((a, b) -> Long.compare(b.getValue(), a.getValue())).forEach(e -> sorted.put(e.getKey(), e.getValue()));
    return sorted;
  }

  /** The classes whose live bytes grew most: name, instance delta, byte delta. */
  static List<Object[]> topClasses(Map<String, long[]> before, Map<String, long[]> after, int n) {
    List<Object[]> rows = new ArrayList<>();
    for (String cls : union(before, after)) {
      long[] b = before.getOrDefault(cls, new long[2]);
      long[] a = after.getOrDefault(cls, new long[2]);
      rows.add(new Object[] {cls, a[0] - b[0], a[1] - b[1]});
    }
    rows.sort((x, y) -> Long.compare((long) y[2], (long) x[2]));
    return rows.subList(0, Math.min(n, rows.size()));
  }

  private static java.util.Set<String> union(Map<String, long[]> a, Map<String, long[]> b) {
    var s = new java.util.HashSet<>(a.keySet());
    s.addAll(b.keySet());
    return s;
  }

  private static long bytes(Map<String, long[]> m, String cls) {
    long[] v = m.get(cls);
    return v == null ? 0 : v[1];
  }
}
