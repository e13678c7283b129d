package dev.flotilla.sandbox.protocol;

import java.util.Locale;
import java.util.Map;

/** Signal names and numbers as callers give them (TERM, SIGTERM, 15), checked before they reach a guest. */
public final class Signals {
  private Signals() {}

  /** Linux x86-64/arm64 numbers of the POSIX signals a caller names. */
  private static final Map<String, Integer> NUMBERS = Map.ofEntries(
      Map.entry("HUP", 1), Map.entry("INT", 2), Map.entry("QUIT", 3), Map.entry("ILL", 4), Map.entry("TRAP", 5),
      Map.entry("ABRT", 6), Map.entry("BUS", 7), Map.entry("FPE", 8), Map.entry("KILL", 9), Map.entry("USR1", 10),
      Map.entry("SEGV", 11), Map.entry("USR2", 12), Map.entry("PIPE", 13), Map.entry("ALRM", 14), Map.entry("TERM", 15),
      Map.entry("CHLD", 17), Map.entry("CONT", 18), Map.entry("STOP", 19), Map.entry("TSTP", 20), Map.entry("TTIN", 21),
      Map.entry("TTOU", 22), Map.entry("URG", 23), Map.entry("XCPU", 24), Map.entry("XFSZ", 25), Map.entry("VTALRM", 26),
      Map.entry("PROF", 27), Map.entry("WINCH", 28), Map.entry("IO", 29), Map.entry("PWR", 30), Map.entry("SYS", 31));

  /** A signal's name without SIG (TERM), or its number for one without a name here (40). */
  public static String name(int signal) {
    for (var e : NUMBERS.entrySet()) if (e.getValue() == signal) return e.getKey();
    return Integer.toString(signal);
  }

  /** The highest signal number (SIGRTMAX on Linux). */
  public static final int MAX = 64;

  /**
   * The signal's number: a name with or without SIG (any case) or a number 1-64; empty: TERM.
   *
   * @throws IllegalArgumentException saying what to give instead
   */
  public static int parse(String signal) {
    String s = signal == null ? "" : signal.trim();
    if (s.isEmpty()) return 15;
    if (s.length() > 16) throw new IllegalArgumentException("signal '" + s.substring(0, 16) + "...' is not a signal");
    if (s.chars().allMatch(Character::isDigit)) {
      int n = Integer.parseInt(s);
      if (n < 1 || n > MAX) throw new IllegalArgumentException("signal " + n + " is out of range: give 1-" + MAX + " or a name such as TERM");
      return n;
    }
    String name = s.toUpperCase(Locale.ROOT);
    if (name.startsWith("SIG")) name = name.substring(3);
    Integer n = NUMBERS.get(name);
    if (n == null) {
      throw new IllegalArgumentException("signal '" + s + "' is unknown: give a number 1-" + MAX
          + " or a name such as TERM, KILL, INT, HUP, USR1");
    }
    return n;
  }
}
