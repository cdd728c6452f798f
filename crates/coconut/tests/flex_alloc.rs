//! The patched burn-flex (vendor/burn-flex/PATCH.md): a new CPU tensor is zeroed, aligned for its
//! dtype, uniquely owned, and written in place without a copy.
#![cfg(not(target_arch = "wasm32"))]

use burn::tensor::{DType, Shape};
use burn_flex::FlexTensor;

#[test]
fn a_new_tensor_is_zeroed_aligned_and_written_in_place() {
    for (dtype, size) in [(DType::F32, 4), (DType::F64, 8), (DType::F16, 2), (DType::U8, 1), (DType::I64, 8)] {
        let t = FlexTensor::empty(Shape::new([3, 5]), dtype);
        assert_eq!(t.bytes().len(), 15 * size, "{dtype:?}");
        assert!(t.bytes().iter().all(|&b| b == 0), "{dtype:?}");
        assert_eq!(t.bytes().as_ptr() as usize % size, 0, "{dtype:?}");
        assert!(t.is_unique(), "{dtype:?}");
    }
    let mut t = FlexTensor::empty(Shape::new([4]), DType::F32);
    let before = t.bytes().as_ptr();
    t.storage_mut::<f32>().copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.bytes().as_ptr(), before, "a fresh tensor is written where it was allocated");
    assert_eq!(t.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
}
