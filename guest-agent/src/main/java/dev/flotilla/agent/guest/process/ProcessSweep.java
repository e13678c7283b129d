package dev.flotilla.agent.guest.process;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.OptionalLong;
import java.util.Set;

/**
 * SIGKILL to everything this agent started: its processes, their descendants, and, when the agent
 * leads its own process group (as under tini), whatever else is in that group, which catches
 * daemons that double-forked away from their parent. Processes that started a session of their
 * own escape this; the sandbox's end (the pid namespace's or the VM's) takes them.
 */
public final class ProcessSweep {

  private ProcessSweep() {}

  /** Kills and re-scans until nothing is left or {@code rounds} are used up; true if nothing is left. */
  public static boolean killAll(List<GuestProcess> started, int rounds) {
    for (int i = 0; i < rounds; i++) {
      Set<Long> victims = victims(started);
      if (victims.isEmpty()) return true;
      for (long pid : victims) ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
      try {
        Thread.sleep(20); // let them die and be reaped before looking again
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
    return victims(started).isEmpty();
  }

  static Set<Long> victims(List<GuestProcess> started) {
    ProcessHandle self = ProcessHandle.current();
    Set<Long> spare = new HashSet<>();
    for (ProcessHandle p = self; p != null; p = p.parent().orElse(null)) spare.add(p.pid());
    Set<Long> v = new LinkedHashSet<>();
    for (GuestProcess p : started) v.add(p.pid());
    self.descendants().forEach(d -> v.add(d.pid()));
    if (processGroup(self.pid()).orElse(-1) == self.pid()) v.addAll(groupMembers(self.pid()));
    v.removeAll(spare);
    v.removeIf(pid -> !alive(pid));
    return v;
  }

  private static Set<Long> groupMembers(long pgid) {
    Set<Long> members = new LinkedHashSet<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().matches("[0-9]+"))) {
      for (Path p : ds) {
        long pid = Long.parseLong(p.getFileName().toString());
        if (processGroup(pid).orElse(-1) == pgid) members.add(pid);
      }
    } catch (IOException e) {
      // no /proc: the descendants are all we can find
    }
    return members;
  }

  /** Field 5 of /proc/PID/stat, read after the command name (which may hold spaces and parentheses). */
  static OptionalLong processGroup(long pid) {
    String[] f = statFields(pid);
    return f == null || f.length < 3 ? OptionalLong.empty() : OptionalLong.of(Long.parseLong(f[2]));
  }

  /** Alive and not a zombie: a zombie is dead, its parent just has not reaped it yet. */
  static boolean alive(long pid) {
    String[] f = statFields(pid);
    return f != null && f.length > 0 && !f[0].equals("Z") && !f[0].equals("X");
  }

  /** The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ... */
  private static String[] statFields(long pid) {
    try {
      String s = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
      return s.substring(s.lastIndexOf(')') + 2).trim().split(" ");
    } catch (IOException | RuntimeException e) {
      return null;
    }
  }
}
