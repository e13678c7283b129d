package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.Set;

/** Reads what the driver needs from /proc: start times, states, parents and namespace pids. */
final class Procfs {
  private Procfs() {}

  /** One line of /proc/PID/stat, split after the command name (which may contain spaces). */
  record Stat(long pid, char state, long ppid, long pgrp, long startTime) {}

  static Optional<Stat> stat(long pid) {
    String s;
    try {
      s = Files.readString(Path.of("/proc", Long.toString(pid), "stat"), StandardCharsets.UTF_8);
    } catch (IOException | RuntimeException e) {
      return Optional.empty();
    }
    int close = s.lastIndexOf(')');
    if (close < 0) return Optional.empty();
    String[] f = s.substring(close + 2).trim().split(" ");
    // f[0] is field 3 (state), so field N is f[N - 3].
    try {
      return Optional.of(new Stat(pid, f[0].charAt(0), Long.parseLong(f[1]), Long.parseLong(f[2]), Long.parseLong(f[19])));
    } catch (RuntimeException e) {
      return Optional.empty();
    }
  }

  /** Field 22 of /proc/PID/stat: start time in clock ticks since boot; empty if the pid is gone. */
  static OptionalLong startTime(long pid) {
    return stat(pid).map(st -> OptionalLong.of(st.startTime())).orElse(OptionalLong.empty());
  }

  /** The process's command name (/proc/PID/comm), empty if it is gone. */
  static Optional<String> commandName(long pid) {
    try {
      return Optional.of(Files.readString(Path.of("/proc", Long.toString(pid), "comm"), StandardCharsets.UTF_8).strip());
    } catch (IOException | RuntimeException e) {
      return Optional.empty();
    }
  }

  /** True when {@code pid} is alive, not a zombie, and started at {@code startTime}. */
  static boolean isSameProcess(long pid, long startTime) {
    return stat(pid).filter(st -> st.startTime() == startTime && st.state() != 'Z' && st.state() != 'X').isPresent();
  }

  /** Every live process's parent, one pass over /proc. */
  static Map<Long, Long> parents() {
    Map<Long, Long> parents = new HashMap<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc"))) {
      for (Path p : ds) {
        String name = p.getFileName().toString();
        if (name.isEmpty() || !Character.isDigit(name.charAt(0))) continue;
        long pid;
        try {
          pid = Long.parseLong(name);
        } catch (NumberFormatException e) {
          continue;
        }
        stat(pid).ifPresent(st -> parents.put(st.pid(), st.ppid()));
      }
    } catch (IOException e) {
      // /proc unreadable: the caller sees no descendants.
    }
    return parents;
  }

  /** {@code root} and all its descendants, parents before children. */
  static List<Long> tree(long root) {
    Map<Long, Long> parents = parents();
    Map<Long, List<Long>> children = new HashMap<>();
    parents.forEach((pid, ppid) -> children.computeIfAbsent(ppid, k -> new ArrayList<>()).add(pid));
    Set<Long> out = new LinkedHashSet<>();
    if (!parents.containsKey(root)) return List.of();
    List<Long> todo = new ArrayList<>(List.of(root));
    while (!todo.isEmpty()) {
      long p = todo.remove(0);
      if (out.add(p)) todo.addAll(children.getOrDefault(p, List.of()));
    }
    return List.copyOf(out);
  }

  /** The pids of {@code pid} in its namespaces, outermost first (the NSpid line of status). */
  static List<Long> nsPids(long pid) {
    try {
      for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
        if (line.startsWith("NSpid:")) {
          List<Long> out = new ArrayList<>();
          for (String t : line.substring(6).trim().split("\\s+")) out.add(Long.parseLong(t));
          return out;
        }
      }
    } catch (IOException | RuntimeException e) {
      // gone
    }
    return List.of();
  }

  /** The host pid of the init (PID 1) of the pid namespace that {@code unsharePid} created. */
  static OptionalLong namespaceInit(long unsharePid) {
    for (long pid : tree(unsharePid)) {
      List<Long> ns = nsPids(pid);
      if (ns.size() > 1 && ns.get(ns.size() - 1) == 1L) return OptionalLong.of(pid);
    }
    return OptionalLong.empty();
  }

  /** Sends {@code signal} (a name such as STOP or CONT) with kill(1); true if it succeeded for all. */
  static boolean kill(String signal, List<Long> pids) {
    if (pids.isEmpty()) return true;
    List<String> cmd = new ArrayList<>(List.of("kill", "-" + signal, "--"));
    pids.forEach(p -> cmd.add(Long.toString(p)));
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
      return p.waitFor() == 0;
    } catch (IOException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  static String signalName(int signal) {
    return switch (signal) {
      case 1 -> "SIGHUP";
      case 2 -> "SIGINT";
      case 3 -> "SIGQUIT";
      case 4 -> "SIGILL";
      case 6 -> "SIGABRT";
      case 7 -> "SIGBUS";
      case 8 -> "SIGFPE";
      case 9 -> "SIGKILL";
      case 11 -> "SIGSEGV";
      case 13 -> "SIGPIPE";
      case 14 -> "SIGALRM";
      case 15 -> "SIGTERM";
      default -> "signal " + signal;
    };
  }
}
