package dev.flotilla.agent.guest.rebirth;

/**
 * What a clone's agent changes in its guest's kernel so that it is no longer a copy of the
 * template: the kernel's random state, the wall clock and the hostname. An interface so that
 * tests record the calls instead of changing the test host's clock and hostname;
 * {@link LinuxCloneSystem} is the real one.
 *
 * <p>Each method either did what it says or throws {@link CloneSystemException} saying why.
 */
public interface CloneSystem {

  /**
   * Mixes {@code seed} into the kernel's entropy pool, crediting it, and has the kernel's CRNG
   * reseed from the pool now rather than at its next scheduled reseed (up to minutes later): until
   * then every clone of a template would read the same bytes from /dev/urandom.
   */
  void reseedKernelRng(byte[] seed) throws CloneSystemException;

  /** Sets CLOCK_REALTIME to {@code unixMillis}. */
  void setWallClock(long unixMillis) throws CloneSystemException;

  /** Sets the kernel's hostname (of the agent's UTS namespace). */
  void setHostname(String hostname) throws CloneSystemException;

  /**
   * Loads what the calls need, ahead of them: a template's agent does this before the template is
   * saved, so that its clones do not pay for it (JNA's start costs hundreds of milliseconds under
   * TCG). Best effort: a failure here shows again at the call.
   */
  default void prepare() {}

  /** A step of a rebirth the kernel refused. */
  final class CloneSystemException extends Exception {
    public CloneSystemException(String message) {
      super(message);
    }
  }
}
