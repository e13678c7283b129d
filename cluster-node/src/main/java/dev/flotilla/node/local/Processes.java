package dev.flotilla.node.local;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/** This machine's processes as /proc shows them, and signals to them. Linux only. */
final class Processes {
  private Processes() {}

  /** One process: pid, parent pid, state letter (R, S, T, Z, ...), and its argv. */
  record Proc(long pid, long ppid, char state, List<String> argv) {}

  static List<Proc> list() {
    List<Proc> out = new ArrayList<>();
    try (Stream<Path> dirs = Files.list(Path.of("/proc"))) {
      for (Path d : (Iterable<Path>) dirs::iterator) {
        String name = d.getFileName().toString();
        if (name.isEmpty() || !Character.isDigit(name.charAt(0))) continue;
        try {
          byte[] raw = Files.readAllBytes(d.resolve("cmdline"));
          String stat = Files.readString(d.resolve("stat"), StandardCharsets.UTF_8);
          int close = stat.lastIndexOf(')');
          char state = close > 0 && close + 2 < stat.length() ? stat.charAt(close + 2) : '?';
          String[] rest = close > 0 ? stat.substring(close + 2).split(" ") : new String[0];
          long ppid = rest.length > 1 ? Long.parseLong(rest[1]) : 0;
          List<String> argv = raw.length == 0 ? List.of()
              : Arrays.asList(new String(raw, StandardCharsets.UTF_8).split("\0"));
          out.add(new Proc(Long.parseLong(name), ppid, state, argv));
        } catch (IOException | NumberFormatException e) {
          // gone meanwhile
        }
      }
    } catch (IOException e) {
      throw new IllegalStateException("cannot list /proc: " + e.getMessage(), e);
    }
    return out;
  }

  /** Live (non-zombie) processes whose command line contains {@code text}, not this JVM. */
  static List<Long> mentioning(String text) {
    long self = ProcessHandle.current().pid();
    List<Long> out = new ArrayList<>();
    for (Proc p : list()) {
      if (p.pid() == self || p.state() == 'Z') continue;
      if (p.argv().stream().anyMatch(a -> a.contains(text))) out.add(p.pid());
    }
    return out;
  }

  /**
   * SIGKILLs every process whose command line contains {@code text} (and their descendants),
   * again until none is left (a dying parent may have forked meanwhile); returns them.
   */
  static List<Long> killAllMentioning(String text) {
    List<Long> killed = new ArrayList<>();
    for (int round = 0; round < 50; round++) {
      List<Long> found = mentioning(text);
      if (found.isEmpty()) break;
      for (long pid : found) {
        ProcessHandle.of(pid).ifPresent(ph -> {
          ph.descendants().forEach(ProcessHandle::destroyForcibly);
          ph.destroyForcibly();
        });
        if (!killed.contains(pid)) killed.add(pid);
      }
      awaitGone(found, 2000);
    }
    return killed;
  }

  /** Waits (bounded) until none of {@code pids} is alive any more (zombies count as gone). */
  static void awaitGone(List<Long> pids, long millis) {
    long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(millis);
    for (long pid : pids) {
      var ph = ProcessHandle.of(pid);
      if (ph.isEmpty()) continue;
      long left = until - System.nanoTime();
      if (left <= 0) return;
      try {
        ph.get().onExit().get(left, TimeUnit.NANOSECONDS);
      } catch (Exception e) {
        // not our child (no exit notification) or still alive: check /proc
        if (isZombieOrGone(pid)) continue;
      }
    }
  }

  static boolean isZombieOrGone(long pid) {
    try {
      String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"), StandardCharsets.UTF_8);
      int close = stat.lastIndexOf(')');
      return close > 0 && close + 2 < stat.length() && stat.charAt(close + 2) == 'Z';
    } catch (IOException e) {
      return true;
    }
  }

  /** Sends {@code kill -SIGNAL pid}; false when the process is gone. */
  static boolean signal(long pid, String signal) {
    if (pid <= 0) return false;
    try {
      Process p = new ProcessBuilder("kill", "-" + signal, Long.toString(pid))
          .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
      return p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }
}
