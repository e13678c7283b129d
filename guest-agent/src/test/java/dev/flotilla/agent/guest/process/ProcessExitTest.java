package dev.flotilla.agent.guest.process;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class ProcessExitTest {
  @Test
  void exitValuesAboveOneTwentyEightAreSignals() {
    assertEquals(new ProcessExit(0, 0), ProcessExit.fromExitValue(0));
    assertEquals(new ProcessExit(3, 0), ProcessExit.fromExitValue(3));
    assertEquals(new ProcessExit(128, 0), ProcessExit.fromExitValue(128));
    assertEquals(new ProcessExit(0, 15), ProcessExit.fromExitValue(143));
    assertEquals(new ProcessExit(0, 9), ProcessExit.fromExitValue(137));
  }
}
