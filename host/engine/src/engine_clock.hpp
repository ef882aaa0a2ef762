// The benchmark clock: steady_clock seconds since the start, minus the time
// spent in pauses (the accuracy check, which a real engine would not do), so
// latencies measure serving only.
#pragma once

#include <chrono>

namespace kvq::host {

class EngineClock {
 public:
  using Clock = std::chrono::steady_clock;

  EngineClock() : start_(Clock::now()) {}
  double now() const { return to_seconds(Clock::now() - start_ - paused_); }
  // The real instant at which now() will read `seconds` (no pause in between).
  Clock::time_point instant_of(double seconds) const {
    return start_ + paused_ +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

  class Pause {
   public:
    explicit Pause(EngineClock& clock) : clock_(clock), begin_(Clock::now()) {}
    ~Pause() { clock_.paused_ += Clock::now() - begin_; }
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;

   private:
    EngineClock& clock_;
    Clock::time_point begin_;
  };

  static double to_seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

 private:
  Clock::time_point start_;
  Clock::duration paused_{0};
};

}  // namespace kvq::host
