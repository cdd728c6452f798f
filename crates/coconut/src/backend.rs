//! The one place that names backends. Everything else takes a `Device` (Burn 0.22 carries the
//! backend in the device), so model code is the same on CPU, Vulkan/Metal, WebGPU and CUDA.

use burn::prelude::Device;

pub mod fused;

/// Backends a build may offer; which ones exist is decided by cargo features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (also runs in wasm).
    Flex,
    /// Burn's ndarray CPU backend.
    Ndarray,
    /// wgpu on the platform's graphics API (Vulkan/Metal/DX12; lavapipe on a CPU-only Linux).
    Wgpu,
    /// WebGPU (the browser).
    WebGpu,
    /// NVIDIA CUDA.
    Cuda,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [Self::Flex, Self::Ndarray, Self::Wgpu, Self::WebGpu, Self::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::WebGpu => "webgpu",
            Self::Cuda => "cuda",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| {
            format!("unknown backend `{name}` (one of: {})", Self::available().iter().map(|b| b.name()).collect::<Vec<_>>().join(", "))
        })
    }

    /// The backends compiled into this build.
    pub fn available() -> Vec<Self> {
        Self::ALL.into_iter().filter(|b| b.device_fn().is_some()).collect()
    }

    /// A device of this backend (device 0 / the default adapter); `Err` when not compiled in, or
    /// (CUDA) when the machine has no driver to run it.
    pub fn device(self) -> Result<Device, String> {
        let device = self
            .device_fn()
            .map(|f| f())
            .ok_or_else(|| format!("backend `{}` is not compiled into this build (cargo feature `{}`)", self.name(), self.name()))?;
        match self {
            #[cfg(feature = "cuda")]
            Self::Cuda => usable(device, || "backend `cuda`: no CUDA driver here (libcuda could not be loaded); --backend wgpu or flex".into()),
            _ => Ok(device),
        }
    }

    /// Makes this backend Burn's default device, used where Burn creates tensors without being
    /// given one (optimizer state read from a checkpoint), so that a CPU run never starts a
    /// Vulkan driver. `BURN_DEVICE` set by the user wins. Call at start, before other threads.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn make_default(self) {
        if std::env::var_os("BURN_DEVICE").is_none() {
            // SAFETY: called at start, before any other thread exists.
            unsafe { std::env::set_var("BURN_DEVICE", self.name()) };
        }
    }

    /// `n` devices for data-parallel training: CUDA devices 0..n, wgpu discrete GPUs 0..n (each
    /// one checked to exist); the CPU backends have one device, which `n` workers then share.
    pub fn devices(self, n: usize) -> Result<Vec<Device>, String> {
        let first = self.device()?;
        match self {
            _ if n <= 1 => Ok(vec![first]),
            #[cfg(feature = "cuda")]
            Self::Cuda => (0..n).map(|i| usable(Device::cuda(i), || missing_gpu(i, n))).collect(),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => (0..n).map(|i| usable(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i)), || missing_gpu(i, n))).collect(),
            Self::Flex | Self::Ndarray => Ok(vec![first; n]),
            _ => Err(format!("backend `{}` offers one device", self.name())),
        }
    }

    fn device_fn(self) -> Option<fn() -> Device> {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => Some(Device::flex),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)] // Burn prefers flex; ndarray stays selectable for comparison
            Self::Ndarray => Some(Device::ndarray),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Some(|| Device::wgpu(Default::default())),
            #[cfg(feature = "webgpu")]
            Self::WebGpu => Some(|| Device::webgpu(Default::default())),
            #[cfg(feature = "cuda")]
            Self::Cuda => Some(|| Device::cuda(0)),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// `device` if a tensor can be made on it (Burn panics on a GPU or driver that is not there), else
/// the error `why` says.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn usable(device: Device, why: impl FnOnce() -> String) -> Result<Device, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| burn::tensor::Tensor::<1>::zeros([1], &device).into_data());
    std::panic::set_hook(hook);
    probe.map(|_| device.clone()).map_err(|_| why())
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn missing_gpu(i: usize, n: usize) -> String {
    format!("--devices {n}: GPU {i} is not there (this machine has {i})")
}
