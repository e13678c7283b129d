package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.OptionalLong;

/** Reads what the driver needs from /proc: start times, states and command names. */
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
