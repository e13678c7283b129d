package dev.flotilla.chaos;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The figures of a run: written to {@code chaos-tests/target/chaos-report.txt} and printed, by
 * the suite's last step. Timings live here and never in assertions.
 */
final class ChaosReport {
  private static final List<String> LINES = Collections.synchronizedList(new ArrayList<>());

  private ChaosReport() {}

  static void line(String s) {
    LINES.add(s);
    System.out.println("[chaos] " + s);
  }

  static void section(String title) {
    line("");
    line("== " + title);
  }

  static void history(History h) {
    for (Map.Entry<String, Integer> e : h.summary().entrySet()) line("   calls: " + e.getKey() + " x" + e.getValue());
  }

  static String millis(List<Long> values) {
    if (values.isEmpty()) return "n/a";
    List<Long> v = new ArrayList<>(values);
    Collections.sort(v);
    double median = v.size() % 2 == 1 ? v.get(v.size() / 2) : (v.get(v.size() / 2 - 1) + v.get(v.size() / 2)) / 2.0;
    return String.format("median %.0f ms, max %d ms over %d (all: %s)", median, v.get(v.size() - 1), v.size(), v);
  }

  static void write() {
    String text = String.join("\n", LINES) + "\n";
    String target = System.getProperty("chaos.report", "target/chaos-report.txt");
    try {
      Path p = Path.of(target);
      Files.createDirectories(p.toAbsolutePath().getParent());
      Files.writeString(p, text, StandardCharsets.UTF_8);
    } catch (IOException e) {
      System.err.println("cannot write " + target + ": " + e);
    }
    System.out.println("\n===== chaos report (" + target + ")\n" + text);
  }
}
