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

/// A matmul's output is allocated without zeroing (the gemm overwrites it): on memory the allocator
/// hands back dirty, the product is still exactly the hand-computed one, 2-D and batched, and a
/// product over an empty inner dimension is zeros.
#[test]
fn a_matmul_on_recycled_memory_equals_the_hand_computed_product() {
    use burn::prelude::*;
    let device = Device::flex();
    let (m, k, n) = (37, 19, 23);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5).collect();
    let mut want = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            want[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
        }
    }
    for round in 0..4 {
        // Dirty the heap with freed buffers of the output's size full of NaN.
        for _ in 0..8 {
            let junk = Tensor::<2>::full([m, n], f32::NAN, &device);
            junk.into_data();
        }
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
        let tb = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
        let got: Vec<f32> = ta.clone().matmul(tb.clone()).into_data().to_vec().unwrap();
        assert_eq!(got, want, "2-D, round {round}");
        // Batched, with the right side broadcast over the batch.
        let batched: Vec<f32> = ta.reshape([1, m, k]).repeat_dim(0, 3).matmul(tb.reshape([1, k, n])).into_data().to_vec().unwrap();
        assert_eq!(batched, [want.clone(), want.clone(), want.clone()].concat(), "batched, round {round}");
    }
    let empty_inner = Tensor::<2>::zeros([m, 0], &device).matmul(Tensor::<2>::zeros([0, n], &device));
    assert!(empty_inner.into_data().to_vec::<f32>().unwrap().iter().all(|&x| x == 0.0));
}

/// A few rows times a transposed matrix (`g·Wᵀ`, a linear layer's input gradient over a thought
/// pass's handful of positions) takes the patch's dot-product kernel instead of `gemm`: the product is
/// exactly the hand-computed one for every row count around the kernel's blocks and the cut-over to
/// `gemm` (17 rows), inner dimensions that are and are not whole vectors, a left side that is a
/// column slice of a wider tensor, and flipped views (negative strides, which keep `gemm`).
#[test]
fn a_few_rows_times_a_transposed_matrix_equal_the_hand_computed_product() {
    use burn::prelude::*;
    let device = Device::flex();
    let n = 23;
    for k in [19, 64, 70] {
        for m in [1, 3, 8, 9, 16, 17] {
            // Values on a grid of 1/4 and 1/2, small enough that every sum is exact in any order.
            let a: Vec<f32> = (0..m * (k + 5)).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.25).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.5).collect(); // [n, k]
            let mut want = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|t| a[i * (k + 5) + 2 + t] * w[j * k + t]).sum();
                }
            }
            let lhs = Tensor::<2>::from_data(TensorData::new(a, [m, k + 5]), &device).slice([0..m, 2..k + 2]);
            let rhs = Tensor::<2>::from_data(TensorData::new(w, [n, k]), &device).transpose();
            let got: Vec<f32> = lhs.clone().matmul(rhs.clone()).into_data().to_vec().unwrap();
            assert_eq!(got, want, "m = {m}, k = {k}");
            // Flipped views (negative strides) are not rows one apart: they keep gemm, and the same product.
            let flipped: Vec<f32> = lhs.flip([0]).matmul(rhs.flip([1])).flip([0, 1]).into_data().to_vec().unwrap();
            assert_eq!(flipped, want, "flipped, m = {m}, k = {k}");
        }
    }
}
